# The PySyft + OpenDP tutorial's style: one Laplace release of a count, scale computed
# from a stated sensitivity and the declared epsilon.
# entry: patient_count
# epsilon: 0.5
# mechanisms: make_laplace
# expect: needs_review
# forbid-rules: epsilon_exceeds_declaration, audit_epsilon_exceeds_declaration, raw_output
def patient_count(df):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    epsilon = 0.5
    sensitivity = 1.0
    scale = sensitivity / epsilon
    input_space = dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)
    laplace = dp.m.make_laplace(*input_space, scale=scale)
    return laplace(float(len(df)))
