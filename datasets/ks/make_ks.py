"""Reference two-sample Kolmogorov-Smirnov results from SciPy.

Makes (paths relative to the repository root):
  datasets/ks/cases.json         two-sample cases (values rounded to 4 decimals, so JSON parsing
                                 cannot create near-ties) with scipy.stats.ks_2samp statistic and
                                 p-value for method='exact', 'asymp' and the default 'auto'
                                 (two-sided), plus the classic Kolmogorov limit p-value
                                 kstwobign.sf(sqrt(n*m/(n+m)) * D) for reference, and a
                                 per-feature table case for the two .npy files below
  datasets/ks/ref_features.npy   float32 [300,5] reference features (standard normal)
  datasets/ks/cur_features.npy   float32 [250,5] current features; features 3 and 4 shifted

Notes on SciPy semantics (scipy >= 1.11 source):
  * 'auto' = 'exact' when max(n1, n2) <= 10000, else 'asymp'; if the exact computation fails
    numerically SciPy warns and falls back to 'asymp'. `auto_method` records what was used
    (detected from that warning).
  * 'asymp' two-sided p = scipy.stats.kstwo.sf(D, round(n1*n2/(n1+n2))) -- the exact one-sample
    KS distribution at the effective size, NOT the Kolmogorov limiting series; the latter is
    given as `p_kolmogorov_limit`.
  * 'exact' rounds D to a multiple of 1/lcm(n1,n2) before computing; ties are handled only in D
    (ECDFs with side='right'), the exact p-value assumes continuous data.

Requirements: numpy, scipy. Run from the repository root:
    /opt/robust-venv/bin/python datasets/ks/make_ks.py
Deterministic (numpy default_rng(0)).
"""
import json
import os
import warnings

import numpy as np
import scipy
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))


def ks_all(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = {}
    for method in ("exact", "asymp", "auto"):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            r = stats.ks_2samp(a, b, method=method)
        fell_back = any("Switching to" in str(x.message) for x in w)
        out[method] = {"statistic": float(r.statistic), "pvalue": float(r.pvalue),
                       "statistic_location": float(r.statistic_location),
                       "statistic_sign": int(r.statistic_sign)}
        if method != "asymp":
            intended = "exact" if method == "exact" or max(len(a), len(b)) <= 10000 else "asymp"
            out[method]["method_used"] = "asymp" if fell_back else intended
    n, m = len(a), len(b)
    en = n * m / (n + m)
    d = out["auto"]["statistic"]
    return {
        "statistic": d,
        "pvalue_exact": out["exact"]["pvalue"],
        "pvalue_asymp": out["asymp"]["pvalue"],
        "pvalue_auto": out["auto"]["pvalue"],
        "auto_method": out["auto"]["method_used"],
        "exact_method_used": out["exact"]["method_used"],
        "p_kolmogorov_limit": float(stats.kstwobign.sf(np.sqrt(en) * d)),
        "scipy": out,
    }


def r4(x):
    return [float(v) for v in np.round(np.asarray(x, dtype=np.float64), 4)]


def main():
    rng = np.random.default_rng(0)
    N = rng.standard_normal
    cases = [
        ("tiny_same_size_5", "n=5 vs n=5 standard normals", r4(N(5)), r4(N(5))),
        ("small_diff_sizes_5_7", "n=5 vs n=7, second shifted by +1", r4(N(5)), r4(N(7) + 1.0)),
        ("ties_integers_30_40", "rounded to integers (many ties within and across samples)",
         r4(np.round(N(30) * 2)), r4(np.round(N(40) * 2 + 0.5))),
        ("identical_50", "the same sample twice (D = 0, p = 1)", None, None),
        ("separated_10_10", "no overlap (D = 1)", r4(rng.uniform(0, 1, 10)), r4(rng.uniform(2, 3, 10))),
        ("shift_0.5_100_100", "N(0,1) vs N(0.5,1), n=100 each", r4(N(100)), r4(N(100) + 0.5)),
        ("same_dist_200_150", "same distribution, different sizes", r4(N(200)), r4(N(150))),
        ("shift_0.1_2000_1500", "N(0,1) vs N(0.1,1), n=2000 vs 1500", r4(N(2000)), r4(N(1500) + 0.1)),
        ("scale_2000_2000", "N(0,1) vs N(0,1.3^2), n=2000 each", r4(N(2000)), r4(N(2000) * 1.3)),
    ]
    same = r4(N(50))
    out_cases = []
    for name, desc, a, b in cases:
        if a is None:
            a, b = same, list(same)
        res = ks_all(a, b)
        out_cases.append({"name": name, "description": desc, "n1": len(a), "n2": len(b),
                          "alternative": "two-sided", **res, "sample1": a, "sample2": b})
        print(f"{name:22s} D={res['statistic']:.6f} p_exact={res['pvalue_exact']:.6g} "
              f"p_asymp={res['pvalue_asymp']:.6g} p_auto={res['pvalue_auto']:.6g} ({res['auto_method']}) "
              f"p_kolm={res['p_kolmogorov_limit']:.6g}")

    # feature-table case
    ref = rng.standard_normal((300, 5)).astype(np.float32)
    cur = rng.standard_normal((250, 5)).astype(np.float32)
    cur[:, 3] += 0.5
    cur[:, 4] = cur[:, 4] * 1.5 + 0.3
    np.save(os.path.join(HERE, "ref_features.npy"), ref)
    np.save(os.path.join(HERE, "cur_features.npy"), cur)
    feats = []
    for j in range(5):
        res = ks_all(ref[:, j].astype(np.float64), cur[:, j].astype(np.float64))
        feats.append({"feature": j, "shifted": j in (3, 4), **res})
        print(f"feature {j}: D={res['statistic']:.6f} p_auto={res['pvalue_auto']:.6g} ({res['auto_method']})")

    doc = {
        "tool": "scipy.stats.ks_2samp", "scipy_version": scipy.__version__,
        "numpy_version": np.__version__,
        "notes": "two-sided; 'auto' is exact for max(n1,n2) <= 10000 unless the exact computation "
                 "fails (then asymp, see auto_method); asymp p = kstwo.sf(D, round(n1*n2/(n1+n2))); "
                 "p_kolmogorov_limit = kstwobign.sf(sqrt(n1*n2/(n1+n2))*D); values in scipy.* are "
                 "the raw per-method results. Feature values are the float32 npy values widened to "
                 "float64.",
        "cases": out_cases,
        "feature_table": {
            "ref": "ref_features.npy", "cur": "cur_features.npy",
            "ref_shape": [300, 5], "cur_shape": [250, 5],
            "description": "standard normal; cur feature 3 shifted by +0.5, cur feature 4 = 1.5*z + 0.3",
            "features": feats,
        },
    }
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
