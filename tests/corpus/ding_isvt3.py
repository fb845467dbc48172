# Ding et al. (CCS 2018) iSVT3 (Lyu, Su and Li 2017, Alg. 4, after Chen et al.): query
# noise not scaled by the number c of positives allowed. Incorrect.
# On the patients mock of test_policies_corpus the survey columns are missing: the run
# fails there and only static analysis applies; tests/test_audit_ding.py audits it on a
# survey mock.
# Ding et al.'s neighbours: the queries may move in opposite directions (a changed row
# leaves one condition for others), and ten queries, as in StatDP's tests.
# privacy-unit: change
# The leak needs thousands of runs per table: a policy's audit.time_budget_seconds and
# audit.max_trials raised to these (the test's) catch it.
# audit-budget: 30.0
# audit-max-trials: 40000
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
    c = 3
    eps1 = epsilon / 4
    rho = np.random.laplace(0.0, 1 / eps1)
    out, count = [], 0
    for name in CONDITIONS:
        nu = np.random.laplace(0.0, 1 / (epsilon - eps1))
        if df[name].sum() + nu >= THRESHOLD + rho:
            out.append(True)
            count += 1
            if count >= c:
                break
        else:
            out.append(False)
    return out
