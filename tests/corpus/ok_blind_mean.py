# The kit's way, data-blind: the function gets a blind frame and each helper is released
# by the site's releaser, which keeps the odometer: DP by construction, so it can pass.
# entry: mean_age
# kind: blind
# epsilon: 0.5
# expect: pass
# forbid-rules: raw_data_access, raw_output
def mean_age(df):
    from researcher_kit import dp

    older = df[(df["age"] >= 40) & (df["bmi"] < 35)]
    n = dp.count(older, epsilon=0.2)
    return {"older": n, "mean_age": dp.mean(df["age"], bounds=(18, 90), epsilon=0.3)}
