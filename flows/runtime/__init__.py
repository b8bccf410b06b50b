"""How a bp process behaves, whatever it runs: settings, signals, bounded waits on servers, HTTP, its terminal."""
