# A diffprivlib model with stated data bounds, returned through skops.
# entry: progression_model
# epsilon: 1.0
# mechanisms: diffprivlib.models.LogisticRegression
# expect: needs_review
# forbid-rules: non_dp_model, raw_output, epsilon_exceeds_declaration
def progression_model(df):
    from diffprivlib.models import LogisticRegression
    from skops.io import dumps

    features = df[["age", "bmi"]].to_numpy(dtype=float)
    label = (df["target"] > 150).to_numpy().astype(int)
    model = LogisticRegression(epsilon=1.0, data_norm=100.0).fit(features, label)
    return dumps(model)
