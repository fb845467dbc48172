# My broken variant: Gaussian noise scaled like Laplace (sigma = 1/epsilon), the delta
# term forgotten; the request declares pure epsilon-DP.
# On the patients mock of test_policies_corpus the survey columns are missing: the run
# fails there and only static analysis applies; tests/test_audit_ding.py audits it on a
# survey mock.
# entry: diabetes_count
# epsilon: 0.5
# delta: 0
# expect: needs_review
# expect-rules: hand_written_noise,epsilon_exceeds_declaration
# forbid-rules: no_mechanism, raw_output
# audit: violation
# audit-budget: 4.0
import numpy as np


def diabetes_count(df):
    epsilon = 0.5
    return float(df["diabetes"].sum() + np.random.normal(0.0, 1 / epsilon))
