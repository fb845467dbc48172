# An import the policy does not allow.
# entry: analysis
# epsilon: 0.1
# expect: blocked
# expect-rules: forbidden_import
import torch


def analysis(df):
    return torch.tensor(df["age"].to_numpy()).mean().item()
