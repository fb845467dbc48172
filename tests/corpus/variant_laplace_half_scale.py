# My broken variant: a Laplace count with half the scale it needs (1 / (2 epsilon)), so it
# spends twice the declared epsilon.
# On the patients mock of test_policies_corpus the survey columns are missing: the run
# fails there and only static analysis applies; tests/test_audit_ding.py audits it on a
# survey mock.
# entry: asthma_count
# epsilon: 0.5
# delta: 0
# expect: needs_review
# expect-rules: hand_written_noise,epsilon_exceeds_declaration
# forbid-rules: no_mechanism, raw_output
# audit: violation
# audit-budget: 2.0
import numpy as np


def asthma_count(df):
    epsilon = 0.5
    return float(df["asthma"].sum() + np.random.laplace(0.0, 1 / (2 * epsilon)))
