# Ding et al. (CCS 2018) iSVT2 (Lyu, Su and Li 2017, Alg. 6, after Chen et al.): query
# noise of scale 2/epsilon, not scaled by c, and no stop after c = 1 positive answers.
# Incorrect.
# On the patients mock of test_policies_corpus the survey columns are missing: the run
# fails there and only static analysis applies; tests/test_audit_ding.py audits it on a
# survey mock.
# Ding et al.'s neighbours: the queries may move in opposite directions (a changed row
# leaves one condition for others), and ten queries, as in StatDP's tests.
# privacy-unit: change
# entry: common_conditions
# epsilon: 0.5
# expect: needs_review
# expect-rules: hand_written_noise
# forbid-rules: no_mechanism, raw_output
# audit: violation
# audit-budget: 12.0
import numpy as np

CONDITIONS = [
    "asthma", "diabetes", "copd", "obesity", "hypertension",
    "arthritis", "migraine", "eczema", "anaemia", "insomnia",
]
THRESHOLD = 40


def common_conditions(df):
    epsilon = 0.5
    rho = np.random.laplace(0.0, 2 / epsilon)
    out = []
    for name in CONDITIONS:
        nu = np.random.laplace(0.0, 2 / epsilon)
        out.append(bool(df[name].sum() + nu >= THRESHOLD + rho))
    return out
