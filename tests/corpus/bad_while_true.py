# while True without break: flagged statically and by the dry-run's timeout.
# entry: spin
# epsilon: 0.1
# expect: blocked
# expect-rules: possible_non_termination, non_termination
def spin(df):
    while True:
        pass
