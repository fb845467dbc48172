# Ding et al. (CCS 2018) iSVT4 (Lyu, Su and Li 2017, Alg. 3, after Roth's notes): returns
# the noisy answer instead of True, with query noise of scale c / eps2 (half of SVT's).
# Incorrect.
# On the patients mock of test_policies_corpus the survey columns are missing: the run
# fails there and only static analysis applies; tests/test_audit_ding.py audits it on a
# survey mock.
# Ding et al.'s neighbours: the queries may move in opposite directions (a changed row
# leaves one condition for others), and ten queries, as in StatDP's tests.
# privacy-unit: change
# With c = 1 the noisy value leaks only in rare events (a late positive after many
# negatives): ~140,000 runs per table show it, a policy's audit.time_budget_seconds and
# audit.max_trials raised to these (the test's).
# audit-budget: 60.0
# audit-max-trials: 200000
# entry: common_conditions
# epsilon: 0.5
# expect: needs_review
# expect-rules: hand_written_noise
# forbid-rules: no_mechanism, raw_output
# audit: violation
import numpy as np

CONDITIONS = [
    "asthma", "diabetes", "copd", "obesity", "hypertension",
    "arthritis", "migraine", "eczema", "anaemia", "insomnia",
]
THRESHOLD = 40


def common_conditions(df):
    epsilon = 0.5
    c = 1
    eps1, eps2 = epsilon / 2, epsilon / 2
    rho = np.random.laplace(0.0, 1 / eps1)
    out = []
    for name in CONDITIONS:
        noisy = df[name].sum() + np.random.laplace(0.0, c / eps2)
        if noisy >= THRESHOLD + rho:
            out.append(float(noisy))
            break
        out.append(False)
    return out
