"""Exceptions raised by the crypto layer, mapped to exit codes / errno at the boundaries."""


class CryptoError(Exception):
    """Base class: something could not be authenticated or decrypted."""


class WrongPassphrase(CryptoError):
    """The passphrase does not unwrap the master key."""


class AuthenticationFailed(CryptoError):
    """Data failed authentication: tampered, truncated, or encrypted under another key."""
