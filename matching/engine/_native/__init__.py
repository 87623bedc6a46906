"""Sources and build hook of the compiled order book core (see ``..native``)."""
