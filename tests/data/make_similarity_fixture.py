"""Reference values for the similarity family (tests/similarity.rs), from mlxtend and numpy.

Run with a virtual environment holding mlxtend, pandas and numpy:
    python tests/data/make_similarity_fixture.py
Writes tests/data/similarity_*.csv. mlxtend 0.25.0, numpy 2.x were used for the committed files.
"""

import csv
import os
import random

import numpy as np
import pandas as pd
from mlxtend.frequent_patterns import association_rules, fpgrowth
from mlxtend.preprocessing import TransactionEncoder

HERE = os.path.dirname(os.path.abspath(__file__))

# mlxtend's documented example (user guide of fpgrowth / association_rules)
MLXTEND = [
    ["Milk", "Onion", "Nutmeg", "Kidney Beans", "Eggs", "Yogurt"],
    ["Dill", "Onion", "Nutmeg", "Kidney Beans", "Eggs", "Yogurt"],
    ["Milk", "Apple", "Kidney Beans", "Eggs"],
    ["Milk", "Unicorn", "Corn", "Kidney Beans", "Yogurt"],
    ["Corn", "Onion", "Onion", "Kidney Beans", "Ice cream", "Eggs"],
]

# Spark's data/mllib/sample_fpgrowth.txt
SPARK = [
    "r z h k p".split(),
    "z y x w v u t s".split(),
    "s x o n r".split(),
    "x z y m t s q e".split(),
    ["z"],
    "x z y r q t p".split(),
]


def random_baskets(seed=11, n=400, items=30):
    rng = random.Random(seed)
    weights = [1.0 / (k + 1) ** 0.8 for k in range(items)]
    out = []
    for _ in range(n):
        size = 1 + min(int(rng.expovariate(0.35)), 9)
        basket = rng.choices([f"i{k:02d}" for k in range(items)], weights, k=size)
        # complements: i01 follows i00 often, i03 follows i02
        if "i00" in basket and rng.random() < 0.6:
            basket.append("i01")
        if "i02" in basket and rng.random() < 0.5:
            basket.append("i03")
        out.append(basket)
    return out


def mine(baskets, min_support, min_confidence, max_len=None):
    te = TransactionEncoder()
    df = pd.DataFrame(te.fit(baskets).transform(baskets), columns=te.columns_)
    sets = fpgrowth(df, min_support=min_support, use_colnames=True, max_len=max_len)
    rules = association_rules(sets, num_itemsets=len(baskets), metric="confidence",
                              min_threshold=min_confidence)
    return sets, rules


def write_case(name, baskets, min_support, min_confidence, max_len=None):
    sets, rules = mine(baskets, min_support, min_confidence, max_len)
    with open(os.path.join(HERE, f"similarity_{name}_baskets.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["basket", "item"])
        for b, items in enumerate(baskets):
            for item in items:
                w.writerow([b + 1, item])
    with open(os.path.join(HERE, f"similarity_{name}_rules.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["min_support", "min_confidence", "max_len", "itemsets", "antecedent",
                    "consequent", "antecedent_support", "consequent_support", "support",
                    "confidence", "lift", "leverage", "conviction"])
        for _, r in rules.iterrows():
            w.writerow([min_support, min_confidence, max_len or "", len(sets),
                        "|".join(sorted(r["antecedents"])), "|".join(sorted(r["consequents"])),
                        repr(r["antecedent support"]), repr(r["consequent support"]),
                        repr(r["support"]), repr(r["confidence"]), repr(r["lift"]),
                        repr(r["leverage"]), repr(r["conviction"])])
    print(name, len(sets), "itemsets,", len(rules), "rules")


def write_vectors(seed=5, n=200):
    rng = np.random.default_rng(seed)
    with open(os.path.join(HERE, "similarity_vectors.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "inner_product", "cosine_similarity", "cosine_distance"])
        for _ in range(n):
            d = int(rng.integers(1, 40))
            a = rng.normal(size=d) * 10 ** rng.uniform(-3, 3)
            b = rng.normal(size=d) * 10 ** rng.uniform(-3, 3)
            ip = float(np.dot(a, b))
            cos = ip / (np.linalg.norm(a) * np.linalg.norm(b))
            w.writerow([" ".join(repr(float(x)) for x in a), " ".join(repr(float(x)) for x in b),
                        repr(ip), repr(float(cos)), repr(float(1 - cos))])


if __name__ == "__main__":
    write_case("mlxtend", MLXTEND, 0.6, 0.8)
    write_case("spark", SPARK, 0.2, 0.7)
    write_case("random", random_baskets(), 0.03, 0.3, 3)
    write_vectors()
