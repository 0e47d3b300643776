"""The funds check is `balance > amount`: a transfer of exactly the balance is refused,
so an account can never be emptied (the invariant holds, the success path at its boundary
does not)."""
CHECK = "race_conditions.q1"
EXPECT = 'exactly the balance was refused'  # the verdict must give this reason
EDIT = {"transfer": [("WHERE id = %s AND balance >= %s", "WHERE id = %s AND balance > %s")]}
