"""NIR in both directions: models -> NIR (:mod:`.export`) and NIR -> torch (:mod:`.importer`)."""
