"""``sutazai.auth.v1.AuthService``: accounts, sign-in, refresh-token rotation, administration."""
