//! Object stores for lakes on S3-compatible storage (and GCS): built from the
//! environment with a deliberate retry and timeout policy, and error messages that
//! say what to check.
//!
//! Credentials and endpoint follow the conventions of `datafusion-cli` and the AWS
//! tools: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION` (or `AWS_DEFAULT_REGION`), `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`;
//! without keys in the environment, object_store's own chain applies (web identity
//! token, container credentials, instance metadata). Profile files
//! (`~/.aws/credentials`) are not read here: export the keys (for example
//! `eval "$(aws configure export-credentials --format env)"`). With an endpoint
//! set and no region, the region is `us-east-1` (S3-compatible servers ignore it;
//! asking AWS for the bucket's region would leave the machine).
//!
//! Retry and timeout policy (object_store's defaults retry for up to 3 minutes, which
//! looks like a hang to a person at a shell): a request may take
//! [`REQUEST_TIMEOUT`] (connecting [`CONNECT_TIMEOUT`]); failed requests that are
//! safe to retry (connection errors, 5xx, throttling) are retried at most
//! [`MAX_RETRIES`] times with jittered exponential backoff (100 ms doubling to at
//! most 2 s) and never after [`RETRY_TIMEOUT`] since the first attempt. So a
//! stopped server surfaces as an error after at most about `RETRY_TIMEOUT` plus
//! one connect timeout. Override with `AWS_TIMEOUT`, `AWS_CONNECT_TIMEOUT`
//! (object_store's keys, e.g. `120s`), `DFM_S3_MAX_RETRIES` and
//! `DFM_S3_RETRY_TIMEOUT` (seconds).

use std::sync::Arc;
use std::time::Duration;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionContext;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion_cli::object_storage::AwsOptions;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};
use url::Url;

/// Longest a single request may take unless `AWS_TIMEOUT` says otherwise.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest connecting may take unless `AWS_CONNECT_TIMEOUT` says otherwise.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of a failed request unless `DFM_S3_MAX_RETRIES` says otherwise.
pub const MAX_RETRIES: usize = 4;
/// No retry starts later than this after the first attempt unless
/// `DFM_S3_RETRY_TIMEOUT` (seconds) says otherwise.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(20);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match env(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            DataFusionError::Configuration(format!(
                "{name}='{v}' is not a valid number (expected e.g. {name}=10)"
            ))
        }),
    }
}

/// The retry policy of every store this crate builds (see the module docs).
pub fn retry_config() -> Result<RetryConfig> {
    Ok(RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: env_number("DFM_S3_MAX_RETRIES", MAX_RETRIES)?,
        retry_timeout: Duration::from_secs_f64(env_number(
            "DFM_S3_RETRY_TIMEOUT",
            RETRY_TIMEOUT.as_secs_f64(),
        )?),
    })
}

/// AWS options from the environment (keys, token, region, endpoint, allow-HTTP), with
/// the region defaulting to `us-east-1` when an endpoint is set.
pub fn aws_options_from_env() -> AwsOptions {
    let endpoint = env("AWS_ENDPOINT_URL").or_else(|| env("AWS_ENDPOINT"));
    let region = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or_else(|| endpoint.as_ref().map(|_| "us-east-1".to_string()));
    AwsOptions {
        access_key_id: env("AWS_ACCESS_KEY_ID"),
        secret_access_key: env("AWS_SECRET_ACCESS_KEY"),
        session_token: env("AWS_SESSION_TOKEN"),
        region,
        endpoint,
        allow_http: env("AWS_ALLOW_HTTP").map(|v| v.eq_ignore_ascii_case("true") || v == "1"),
        skip_signature: None,
    }
}

/// Build the object store for `url` (`s3://bucket/...` or `gs://bucket/...`) from
/// the environment, with this crate's retry and timeout policy.
pub fn object_store_for(url: &Url) -> Result<Arc<dyn ObjectStore>> {
    object_store_with(url, &aws_options_from_env())
}

/// Like [`object_store_for`] with explicit S3 settings (for embedders whose
/// credentials do not come from the environment); other environment variables of
/// object_store (`AWS_TIMEOUT`, web identity, container credentials) still apply.
pub fn object_store_with(url: &Url, aws: &AwsOptions) -> Result<Arc<dyn ObjectStore>> {
    let retry = retry_config()?;
    let bucket = url.host_str().unwrap_or_default();
    match url.scheme() {
        "s3" | "s3a" => {
            if bucket.is_empty() {
                return Err(DataFusionError::Configuration(format!(
                    "'{url}' names no bucket (expected s3://bucket/prefix)"
                )));
            }
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry);
            if let (Some(key), Some(secret)) = (&aws.access_key_id, &aws.secret_access_key) {
                b = b.with_access_key_id(key).with_secret_access_key(secret);
                if let Some(token) = &aws.session_token {
                    b = b.with_token(token);
                }
            }
            if let Some(region) = &aws.region {
                b = b.with_region(region);
            }
            if let Some(endpoint) = &aws.endpoint {
                if endpoint.starts_with("http://") && aws.allow_http != Some(true) {
                    return Err(DataFusionError::Configuration(format!(
                        "the S3 endpoint '{endpoint}' is plain HTTP: set AWS_ALLOW_HTTP=true to allow it"
                    )));
                }
                b = b.with_endpoint(endpoint);
            }
            if let Some(allow) = aws.allow_http {
                b = b.with_allow_http(allow);
            }
            if let Some(skip) = aws.skip_signature {
                b = b.with_skip_signature(skip);
            }
            for (key, default) in [
                (ClientConfigKey::Timeout, REQUEST_TIMEOUT),
                (ClientConfigKey::ConnectTimeout, CONNECT_TIMEOUT),
            ] {
                let key = AmazonS3ConfigKey::Client(key);
                if b.get_config_value(&key).is_none() {
                    b = b.with_config(key, format!("{}s", default.as_secs()));
                }
            }
            Ok(Arc::new(b.build()?))
        }
        "gs" | "gcs" => {
            let store = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry)
                .build()?;
            Ok(Arc::new(store))
        }
        other => Err(DataFusionError::Configuration(format!(
            "no object store for '{url}': the scheme '{other}' is not supported (use a local path, s3:// or gs://)"
        ))),
    }
}

fn store_url(url: &Url) -> Result<ObjectStoreUrl> {
    ObjectStoreUrl::parse(&url[..url::Position::BeforePath])
}

/// Make sure `ctx` can read and write `url`: local paths and stores already
/// registered are left alone; for `s3://` and `gs://` a store is built from the
/// environment (see the module docs) and registered for the bucket. Contexts from
/// [`crate::session_context`] and the CLI do this on first use by themselves
/// ([`LakeStoreRegistry`]).
pub fn register_object_store(ctx: &SessionContext, url: &Url) -> Result<()> {
    if url.scheme() == "file" {
        return Ok(());
    }
    let store_url = store_url(url)?;
    if ctx.runtime_env().object_store(&store_url).is_ok() {
        return Ok(());
    }
    ctx.register_object_store(store_url.as_ref(), object_store_for(url)?);
    Ok(())
}

/// An object-store registry that builds the store for an `s3://` or `gs://` bucket
/// from the environment the first time it is asked for it (see the module docs),
/// so lakes, URL tables (`SELECT * FROM 's3://...'`) and `COPY TO` share one
/// configuration. Stores registered explicitly win.
#[derive(Debug)]
pub struct LakeStoreRegistry {
    inner: Arc<dyn ObjectStoreRegistry>,
}

impl LakeStoreRegistry {
    /// Wrap `inner` (e.g. DataFusion's `DefaultObjectStoreRegistry`).
    pub fn new(inner: Arc<dyn ObjectStoreRegistry>) -> Self {
        Self { inner }
    }
}

impl ObjectStoreRegistry for LakeStoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        match self.inner.get_store(url) {
            Ok(store) => Ok(store),
            Err(e) if !matches!(url.scheme(), "s3" | "s3a" | "gs" | "gcs") => Err(e),
            Err(_) => {
                let base = store_url(url)?;
                let store = object_store_for(url)?;
                self.inner.register_store(base.as_ref(), store);
                self.inner.get_store(url)
            }
        }
    }
}

/// A storage error turned into a message naming what was being done and what the
/// user can check.
pub fn storage_error(action: &str, location: &str, e: impl std::fmt::Display) -> DataFusionError {
    let text = e.to_string();
    let hint = storage_hint(&text);
    DataFusionError::Configuration(format!("{action} '{location}': {text}{hint}"))
}

/// What to check for a failed object-store request, judged by its message.
pub fn storage_hint(text: &str) -> &'static str {
    let t = text.to_ascii_lowercase();
    if t.contains("nosuchbucket") || t.contains("bucket does not exist") {
        "\nhint: the bucket does not exist (check the bucket name in the URL and AWS_ENDPOINT_URL)"
    } else if t.contains("invalidaccesskeyid")
        || t.contains("signaturedoesnotmatch")
        || t.contains("accessdenied")
        || t.contains("403 forbidden")
    {
        "\nhint: the server refused the credentials (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN)"
    } else if t.contains("404 not found") {
        "\nhint: the server answered 404 Not Found (is AWS_ENDPOINT_URL an S3-compatible server, and the bucket right?)"
    } else if t.contains("error sending request")
        || t.contains("connect")
        || t.contains("timed out")
        || t.contains("timeout")
    {
        "\nhint: the storage server did not answer (is it running, and is AWS_ENDPOINT_URL right? retries and timeouts: docs/lakes.md)"
    } else {
        ""
    }
}
