# A raw aggregate: the exact mean of a private column.
# entry: mean_age
# epsilon: 0.1
# expect: blocked
# expect-rules: raw_output
def mean_age(df):
    return float(df["age"].mean())
