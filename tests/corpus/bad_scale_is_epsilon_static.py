# The same slip in the tutorial's style, with a stated sensitivity: static analysis sees it.
# entry: patient_count
# epsilon: 0.1
# mechanisms: make_laplace
# expect: blocked
# expect-rules: epsilon_exceeds_declaration
def patient_count(df):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    epsilon = 0.1
    sensitivity = 1.0
    input_space = dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)
    laplace = dp.m.make_laplace(*input_space, scale=epsilon)  # should be sensitivity / epsilon
    return laplace(float(len(df)) / sensitivity)
