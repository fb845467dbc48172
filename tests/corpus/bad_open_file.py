# Reads a file of the server.
# entry: attack
# epsilon: 0.1
# expect: blocked
# expect-rules: file_access
def attack(df):
    with open("/etc/passwd") as handle:
        return handle.read()
