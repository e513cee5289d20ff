//! Simulates one customer's whole history. Each customer draws from its own random
//! stream, so the lake does not depend on chunking or thread count.

use super::rng::{Rng, cumulative};
use super::world::*;

#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRow {
    pub customer_id: i64,
    pub signup_ts: i64,
    pub country: &'static str,
    pub acquisition_channel: &'static str,
    pub loyalty_member: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub order_id: i64,
    pub customer_id: i64,
    pub order_ts: i64,
    pub amount: f64,
    pub channel: &'static str,
    pub device: &'static str,
    pub n_items: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ItemRow {
    pub order_id: i64,
    pub line_no: i32,
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TouchRow {
    pub customer_id: i64,
    pub ts: i64,
    pub channel: usize,
    /// Index into `CAMPAIGNS[channel]`, if the channel has campaigns.
    pub campaign: Option<usize>,
    pub cost: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub customer_id: i64,
    pub session_id: i64,
    pub ts: i64,
    pub event_type: &'static str,
    pub product_id: Option<i64>,
    pub order_id: Option<i64>,
}

/// Receives the rows of one customer.
pub trait Sink {
    fn customer(&mut self, row: CustomerRow);
    fn order(&mut self, row: OrderRow);
    fn item(&mut self, row: ItemRow);
    fn touch(&mut self, row: TouchRow);
    fn event(&mut self, row: EventRow);
}

/// Shared read-only state for simulating customers.
#[derive(Debug)]
pub struct World {
    pub seed: u64,
    pub catalog: Catalog,
    pub channels: ChannelModel,
    pub hourly_cdf: Vec<f64>,
    pub country_cdf: Vec<f64>,
    pub device_cdf: Vec<f64>,
}

impl World {
    pub fn new(seed: u64, customers: u64) -> Self {
        Self {
            seed,
            catalog: Catalog::new(seed, product_count(customers)),
            channels: ChannelModel::default(),
            hourly_cdf: hourly_cdf(),
            country_cdf: cumulative(COUNTRY_WEIGHTS),
            device_cdf: cumulative(DEVICE_WEIGHTS),
        }
    }
}

/// Most orders one customer can have (keeps `order_id = customer_id * 1000 + n` unique).
pub const MAX_ORDERS: usize = 999;
/// Most sessions one customer can have (keeps `session_id = customer_id * 10000 + n` unique).
pub const MAX_SESSIONS: i64 = 9999;

fn round_cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The latent per-customer draws, exposed for the generator's statistical tests.
#[derive(Debug, Clone, Copy)]
pub struct Latent {
    pub prospect: bool,
    pub lambda: f64,
    pub p_drop: f64,
    pub nu: f64,
}

struct State<'a> {
    world: &'a World,
    rng: Rng,
    id: i64,
    sessions: i64,
    favourite: usize,
    channel_buf: Vec<usize>,
}

impl State<'_> {
    fn next_session(&mut self) -> Option<i64> {
        if self.sessions >= MAX_SESSIONS {
            return None;
        }
        self.sessions += 1;
        Some(self.id * 10_000 + self.sessions)
    }

    fn step(&mut self, ts: &mut i64, mean_seconds: f64) {
        *ts += (self.rng.exponential(1.0 / mean_seconds) * 1e6) as i64 + 1_000_000;
    }

    /// A browsing session that does not buy: views, sometimes a cart, rarely a checkout.
    fn browse(&mut self, start: i64, sink: &mut dyn Sink) {
        let Some(session_id) = self.next_session() else {
            return;
        };
        let mut ts = start;
        let views = 1 + self.rng.geometric(0.45);
        let mut last = None;
        for _ in 0..views {
            let p = self.world.catalog.pick(&mut self.rng, self.favourite, 0.3);
            let product_id = self.world.catalog.products[p as usize].id;
            sink.event(EventRow {
                customer_id: self.id,
                session_id,
                ts,
                event_type: "view",
                product_id: Some(product_id),
                order_id: None,
            });
            last = Some(product_id);
            self.step(&mut ts, 45.0);
        }
        if self.rng.bernoulli(0.25) {
            sink.event(EventRow {
                customer_id: self.id,
                session_id,
                ts,
                event_type: "add_to_cart",
                product_id: last,
                order_id: None,
            });
            self.step(&mut ts, 60.0);
            if self.rng.bernoulli(0.35) {
                sink.event(EventRow {
                    customer_id: self.id,
                    session_id,
                    ts,
                    event_type: "checkout",
                    product_id: None,
                    order_id: None,
                });
            }
        }
    }

    /// Emit touches for `channels`, the last one at `last_ts`, earlier ones spaced
    /// backwards by exponential gaps (mean 3 days). Returns the touch times.
    fn touches_backward(
        &mut self,
        channels: &[usize],
        last_ts: i64,
        sink: &mut dyn Sink,
    ) -> Vec<i64> {
        let mut times = vec![0i64; channels.len()];
        let mut ts = last_ts;
        for i in (0..channels.len()).rev() {
            times[i] = ts;
            ts -= (self.rng.exponential(1.0 / 3.0) * DAY_US as f64) as i64 + 60_000_000;
        }
        for (i, &c) in channels.iter().enumerate() {
            self.touch(c, times[i], sink);
        }
        times
    }

    fn touch(&mut self, c: usize, ts: i64, sink: &mut dyn Sink) {
        let campaigns = CAMPAIGNS[c];
        let campaign = if campaigns.is_empty() {
            None
        } else {
            Some(self.rng.below(campaigns.len() as u64) as usize)
        };
        let cost = if CHANNEL_COST[c] > 0.0 {
            round_cents(self.rng.gamma(4.0, 4.0 / CHANNEL_COST[c]) + 0.0)
        } else {
            0.0
        };
        sink.touch(TouchRow {
            customer_id: self.id,
            ts,
            channel: c,
            campaign,
            cost,
        });
    }
}

/// Simulate customer `id` and send its rows to `sink`. Returns its latent draws.
pub fn simulate_customer(world: &World, id: i64, sink: &mut dyn Sink) -> Latent {
    let mut rng = Rng::new(world.seed, 1, id as u64);
    // signup day with a growing acquisition rate (density ∝ 1 + 1.5·day/DAYS)
    let last_signup_day = DAYS - 14;
    let day = loop {
        let d = rng.below(last_signup_day as u64) as i64;
        if rng.uniform() * 2.5 < 1.0 + 1.5 * d as f64 / DAYS as f64 {
            break d;
        }
    };
    let signup_ts = START_US + day * DAY_US + time_of_day(&mut rng, &world.hourly_cdf);
    let acquisition = rng.pick_cdf(&world.channels.start_cdf);
    let country = COUNTRIES[rng.pick_cdf(&world.country_cdf)];
    let favourite = rng.pick_cdf(&world.catalog.category_cdf);
    let prospect = rng.bernoulli(PROSPECT_SHARE);
    let lambda = rng.gamma(BG_R, BG_ALPHA);
    let p_drop = rng.beta(BG_A, BG_B);
    let nu = rng.gamma(GG_Q, GG_GAMMA);
    let loyalty_member = rng.bernoulli(if prospect { 0.05 } else { 0.35 });
    sink.customer(CustomerRow {
        customer_id: id,
        signup_ts,
        country,
        acquisition_channel: CHANNELS[acquisition],
        loyalty_member,
    });
    let latent = Latent {
        prospect,
        lambda,
        p_drop,
        nu,
    };

    // purchase times: first purchase shortly after signup, then BG/NBD with
    // seasonal thinning; inactive with probability p after each repeat purchase.
    let mut purchases: Vec<i64> = Vec::new();
    if !prospect {
        let first = signup_ts + (rng.exponential(0.5) * DAY_US as f64) as i64;
        if first < END_US {
            purchases.push(first);
            let max_mult = seasonality_max();
            let mut t = first as f64;
            loop {
                t += rng.exponential(lambda * max_mult) * DAY_US as f64;
                if t >= END_US as f64 || purchases.len() >= MAX_ORDERS {
                    break;
                }
                let day = ((t as i64) - START_US).div_euclid(DAY_US);
                if rng.uniform() * max_mult >= seasonality(day) {
                    continue; // thinned away
                }
                // a purchase's time of day follows the hourly profile
                let ts = START_US + day * DAY_US + time_of_day(&mut rng, &world.hourly_cdf);
                let ts = ts.max(*purchases.last().unwrap_or(&0) + 60_000_000);
                if ts >= END_US {
                    break;
                }
                purchases.push(ts);
                if rng.bernoulli(p_drop) {
                    break;
                }
            }
        }
    }

    let mut st = State {
        world,
        rng,
        id,
        sessions: 0,
        favourite,
        channel_buf: Vec::with_capacity(MAX_JOURNEY),
    };

    for (n, &order_ts) in purchases.iter().enumerate() {
        let order_id = id * 1000 + n as i64 + 1;
        // converting journey ending shortly before the order
        let mut channels = std::mem::take(&mut st.channel_buf);
        st.world
            .channels
            .walk_until(&mut st.rng, JourneyEnd::Convert, &mut channels);
        let last_touch = order_ts - (st.rng.exponential(1.0 / 1800.0) * 1e6) as i64 - 30_000_000;
        let times = st.touches_backward(&channels, last_touch, sink);
        let last_channel = *channels.last().unwrap_or(&DIRECT);
        // earlier touches of the journey produce browsing sessions
        for &t in &times[..times.len() - 1] {
            st.browse(t, sink);
        }
        st.channel_buf = channels;

        // basket: Gamma-Gamma spend target, items around it
        let target = st.rng.gamma(GG_P, nu).max(1.0);
        let catalog = &st.world.catalog;
        let mut basket: Vec<(u32, i32)> = Vec::new();
        let mut base = 0.0;
        while basket.len() < 8 && (basket.is_empty() || base < 0.8 * target) {
            // up to 4 candidates: keep the first that fits the remaining budget, so
            // realised prices stay close to catalog prices
            let budget = 1.3 * (target - base).max(0.0);
            let mut p = 0;
            for attempt in 0..4 {
                p = match basket.last() {
                    Some(&(prev, _)) if st.rng.bernoulli(0.5) => {
                        catalog.products[prev as usize].complements[st.rng.below(2) as usize]
                    }
                    _ => catalog.pick(&mut st.rng, st.favourite, 0.35),
                };
                if attempt == 3 || catalog.products[p as usize].price <= budget {
                    break;
                }
            }
            if let Some(line) = basket.iter_mut().find(|(q, _)| *q == p) {
                line.1 += 1;
            } else {
                basket.push((p, 1));
            }
            base += catalog.products[p as usize].price;
        }
        // realised prices: catalog prices scaled so the order value is the
        // Gamma-Gamma draw (discounts and upgrades)
        let factor = target / base;
        let mut amount = 0.0;
        let device = DEVICES[st.rng.pick_cdf(&st.world.device_cdf)];

        // the purchase session
        let session_id = st.next_session();
        let mut ts = last_touch;
        let mut items = Vec::with_capacity(basket.len());
        for (line_no, &(p, quantity)) in basket.iter().enumerate() {
            let product = &catalog.products[p as usize];
            let unit_price = round_cents((product.price * factor).max(0.01));
            amount += unit_price * f64::from(quantity);
            items.push(ItemRow {
                order_id,
                line_no: line_no as i32 + 1,
                product_id: product.id,
                quantity,
                unit_price,
            });
        }
        if let Some(session_id) = session_id {
            for kind in ["view", "add_to_cart"] {
                for item in &items {
                    sink.event(EventRow {
                        customer_id: id,
                        session_id,
                        ts,
                        event_type: kind,
                        product_id: Some(item.product_id),
                        order_id: None,
                    });
                    ts = (ts + 20_000_000 + st.rng.below(60_000_000) as i64).min(order_ts - 2);
                }
            }
            sink.event(EventRow {
                customer_id: id,
                session_id,
                ts: ts.min(order_ts - 1),
                event_type: "checkout",
                product_id: None,
                order_id: None,
            });
            sink.event(EventRow {
                customer_id: id,
                session_id,
                ts: order_ts,
                event_type: "purchase",
                product_id: None,
                order_id: Some(order_id),
            });
        }
        sink.order(OrderRow {
            order_id,
            customer_id: id,
            order_ts,
            amount: round_cents(amount),
            channel: CHANNELS[last_channel],
            device,
            n_items: items.iter().map(|i| i.quantity).sum(),
        });
        for item in items {
            sink.item(item);
        }
    }

    // journeys that do not convert: between and after orders, and for prospects
    let mean = if prospect {
        1.5
    } else {
        1.0 + 0.8 * purchases.len() as f64
    };
    let n = st.rng.poisson(mean);
    for _ in 0..n {
        let start = signup_ts - 30 * DAY_US
            + st.rng.below(((END_US - signup_ts) + 30 * DAY_US) as u64) as i64;
        let mut channels = std::mem::take(&mut st.channel_buf);
        st.world
            .channels
            .walk_until(&mut st.rng, JourneyEnd::Drop, &mut channels);
        let mut ts = start;
        for &c in &channels {
            if ts >= END_US {
                break;
            }
            st.touch(c, ts, sink);
            if st.rng.bernoulli(0.6) {
                st.browse(ts, sink);
            }
            ts += (st.rng.exponential(1.0 / 3.0) * DAY_US as f64) as i64 + 60_000_000;
        }
        st.channel_buf = channels;
    }
    latent
}
