"""A quick stand-in for the package's MiniLM description embeddings (testing only).

The main benchmark passes real MiniLM vectors via --embeddings; this makes an
.npz of the same shape from TF-IDF + truncated SVD so the *_text contenders can
be run without the package's venv.

    python stand_in_embeddings.py PRODUCTS.csv OUT.npz [--dim 64]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("products")
    parser.add_argument("out")
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()
    products = pd.read_csv(args.products, dtype={"item_id": str})
    text = products["description"].fillna("").astype(str)
    tfidf = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2).fit_transform(text)
    dim = min(args.dim, tfidf.shape[1] - 1)
    vectors = normalize(TruncatedSVD(dim, random_state=0).fit_transform(tfidf)).astype(np.float32)
    np.savez(args.out, item_id=products["item_id"].to_numpy(dtype=str), embedding=vectors)
    print(f"wrote {vectors.shape} embeddings to {args.out}")


if __name__ == "__main__":
    main()
