"""prefstream's wire contracts: events in, evidence for the model, profiles out, dead letters."""
