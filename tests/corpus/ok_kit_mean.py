# The researcher kit's way: one call to a DP helper, declared by its name (what
# DPRequest.run_on_mock declares). The release inside the helper is the declared one.
# entry: mean_age
# epsilon: 0.5
# mechanisms: researcher_kit.dp.mean
# expect: needs_review
# It is a raw-data request (it receives the table), so at best needs_review:
# the same code written data-blind is ok_blind_mean.
# forbid-rules: undeclared_mechanism, epsilon_exceeds_declaration, raw_output
def mean_age(df):
    from researcher_kit import dp

    return dp.mean(df["age"], bounds=(18, 90), epsilon=0.5)
