# Data-blind code that asks for more than it declared: static analysis adds up the
# constants (blocked), and on the mock the releaser refuses the second release
# (BudgetExceeded), so the dry-run fails too.
# entry: greedy
# kind: blind
# epsilon: 0.5
# expect: blocked
# expect-rules: epsilon_exceeds_declaration, run_failed
def greedy(df):
    from researcher_kit import dp

    first = dp.mean(df["age"], bounds=(18, 90), epsilon=0.5)
    return first, dp.mean(df["bmi"], bounds=(15, 45), epsilon=0.5)
