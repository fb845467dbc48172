# Ding et al. (CCS 2018): a histogram (disjoint age bands) with Laplace noise of scale
# 1/epsilon per bin: correct (adding or removing one row moves one bin by one).
# entry: age_histogram
# epsilon: 0.25
# expect: needs_review
# expect-rules: hand_written_noise
# forbid-rules: no_mechanism, raw_output, audit_epsilon_exceeds_declaration
# audit: none
import numpy as np


def age_histogram(df):
    epsilon = 0.25
    rng = np.random.default_rng()
    counts = np.histogram(df["age"].clip(18, 90), bins=[18, 30, 45, 60, 75, 91])[0]
    noisy = counts + rng.laplace(0.0, 1 / epsilon, size=len(counts))
    return [float(x) for x in noisy]
