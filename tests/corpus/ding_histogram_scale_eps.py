# Ding et al. (CCS 2018): the same histogram with Laplace noise of scale epsilon instead
# of 1/epsilon: incorrect (sixteen times too little noise at epsilon 0.25).
# entry: age_histogram
# epsilon: 0.25
# expect: blocked
# expect-rules: hand_written_noise, epsilon_exceeds_declaration, audit_epsilon_exceeds_declaration
# forbid-rules: no_mechanism, raw_output
# audit: violation
# audit-budget: 2.0
import numpy as np


def age_histogram(df):
    epsilon = 0.25
    rng = np.random.default_rng()
    counts = np.histogram(df["age"].clip(18, 90), bins=[18, 30, 45, 60, 75, 91])[0]
    noisy = counts + rng.laplace(0.0, epsilon, size=len(counts))
    return [float(x) for x in noisy]
