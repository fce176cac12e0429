"""One ComponentResource per logical entity of the platform."""
