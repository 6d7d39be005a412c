"""Security: keys, tokens and scopes, artifact signing and encryption, scanning."""
