"""Who is calling: users, API keys, accounts (passwords, sign-up) and web sessions."""
