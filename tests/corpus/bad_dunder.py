# Reaching the interpreter through attributes instead of imports.
# entry: attack
# epsilon: 0.1
# expect: blocked
# expect-rules: dunder_access, dangerous_builtin
def attack(df):
    builtins = df.__class__.__init__.__globals__["__builtins__"]
    return getattr(builtins, "ev" + "al")("1 + 1")
