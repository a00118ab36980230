"""Small helpers every part uses: atomic files, text cleaning, process identity, provenance."""
