"""Reference values of the Gauss hypergeometric function 2F1(A, B; C; z) for the series the
BG/NBD-family predictions sum (A = a + b - 1 - r, B = a - 1, C = a + b + x - 1 after Euler's
transformation), computed by mpmath at 50 significant digits.

    python tests/data/make_hyp2f1_fixture.py > tests/data/hyp2f1_mpmath.csv

Parameter sets: the fit on the benchmark lake, lifetimes' CDNOW fit (a < 1, so B < 0), and
one with a > 2 + r (later terms' ratios above z for small x). Frequencies from 0 to 300,
arguments z = h / (alpha + T + h) from 0.01 to 0.99."""
import mpmath

mpmath.mp.dps = 50
SETS = [
    (1.2634702234321793, 18.249839327942254, 1.4531617080209847, 13.406410808107518),
    (0.2425925236, 4.4136168064, 0.7929178655, 2.4258689758),
    (0.5, 5.0, 4.5, 2.0),
]
print("a,b,c,z,value")
for r, alpha, a, b in SETS:
    for x in [0, 1, 2, 5, 20, 100, 300]:
        A, B, C = a + b - 1 - r, a - 1, a + b + x - 1
        for z in [0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99]:
            v = mpmath.hyp2f1(A, B, C, z)
            print(f"{A!r},{B!r},{C!r},{z!r},{mpmath.nstr(v, 20, strip_zeros=False)}")
