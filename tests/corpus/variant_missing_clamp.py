# My broken variant: the noise assumes at most 10 visits a person, but the clamp is
# missing, so one frequent visitor moves the sum further than the noise covers.
# On the patients mock of test_policies_corpus the survey columns are missing: the run
# fails there and only static analysis applies; tests/test_audit_ding.py audits it on a
# survey mock.
# entry: total_visits
# epsilon: 0.5
# delta: 0
# expect: needs_review
# expect-rules: hand_written_noise
# forbid-rules: no_mechanism, raw_output
# audit: violation
import numpy as np


def total_visits(df):
    epsilon = 0.5
    bound = 10
    visits = df["visits"]  # should be df["visits"].clip(0, bound)
    return float(visits.sum() + np.random.laplace(0.0, bound / epsilon))
