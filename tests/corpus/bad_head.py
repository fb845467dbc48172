# Private rows returned as they are.
# entry: peek
# epsilon: 0.1
# expect: blocked
# expect-rules: raw_rows_returned
def peek(df):
    first = df.head()
    return first
