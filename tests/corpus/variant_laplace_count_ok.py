# A Laplace count at scale 1/epsilon: correct.
# On the patients mock of test_policies_corpus the survey columns are missing: the run
# fails there and only static analysis applies; tests/test_audit_ding.py audits it on a
# survey mock.
# entry: asthma_count
# epsilon: 0.5
# delta: 0
# expect: needs_review
# expect-rules: hand_written_noise
# forbid-rules: no_mechanism, raw_output
# audit: none
import numpy as np


def asthma_count(df):
    epsilon = 0.5
    return float(df["asthma"].sum() + np.random.laplace(0.0, 1 / epsilon))
