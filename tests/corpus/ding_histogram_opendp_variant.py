# Ding et al.'s histogram with OpenDP: condition counts (a person has at most one
# condition in this survey) with make_laplace at scale 1/epsilon: correct.
# On the patients mock of test_policies_corpus the survey columns are missing: the run
# fails there and only static analysis applies; tests/test_audit_ding.py audits it on a
# survey mock.
# entry: condition_histogram
# epsilon: 0.5
# mechanisms: make_laplace
# expect: needs_review
# forbid-rules: no_mechanism, audit_epsilon_exceeds_declaration
# audit: none
CONDITIONS = ["asthma", "diabetes", "copd", "obesity", "hypertension"]


def condition_histogram(df):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    epsilon = 0.5
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
    laplace = dp.m.make_laplace(*space, scale=1 / epsilon)
    return laplace(df[CONDITIONS].sum().astype(float).tolist())
