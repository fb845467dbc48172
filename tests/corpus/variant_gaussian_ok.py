# A Gaussian count calibrated to (epsilon, delta) with the classic formula: correct
# (the audit tests P[E | D] <= e^epsilon P[E | D'] + delta).
# On the patients mock of test_policies_corpus the survey columns are missing: the run
# fails there and only static analysis applies; tests/test_audit_ding.py audits it on a
# survey mock.
# entry: diabetes_count
# epsilon: 0.5
# delta: 1e-6
# expect: needs_review
# expect-rules: hand_written_noise
# forbid-rules: no_mechanism, raw_output
# audit: none
import numpy as np


def diabetes_count(df):
    epsilon = 0.5
    delta = 1e-6
    sigma = np.sqrt(2 * np.log(1.25 / delta)) / epsilon
    return float(df["diabetes"].sum() + np.random.normal(0.0, sigma))
