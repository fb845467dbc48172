# A loop that never ends and that static analysis cannot see: the dry-run times out.
# entry: spin
# epsilon: 0.1
# expect: blocked
# expect-rules: non_termination
def spin(df):
    total = 1.0
    while total > 0:
        total += float(len(df))
    return total
