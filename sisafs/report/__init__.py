"""What sisafs has done and is doing, for people: the visual report of a vault
(`sisafs report`) and the live progress view (`sisafs status --watch`)."""
