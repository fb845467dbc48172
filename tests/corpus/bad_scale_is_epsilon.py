# The classic slip: scale=epsilon instead of sensitivity/epsilon (with epsilon=0.1, a
# hundred times too little noise). The OpenDP pipeline states no constant sensitivity:
# the dry-run's privacy map and the audit catch it.
# entry: patient_count
# epsilon: 0.1
# mechanisms: make_laplace
# expect: blocked
# expect-rules: epsilon_exceeds_declaration, audit_epsilon_exceeds_declaration
def patient_count(df):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    epsilon = 0.1
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()
    count = space >> dp.t.then_count() >> dp.m.then_laplace(scale=epsilon)
    return float(count(df["age"].tolist()))
