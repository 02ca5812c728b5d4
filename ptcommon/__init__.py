"""What both CLIs share: how bad input is reported. Neither stage's logic lives here."""
