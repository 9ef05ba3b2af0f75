"""Key derivation, key wrapping and authenticated encryption. No image code here."""
