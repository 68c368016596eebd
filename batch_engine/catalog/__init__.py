"""The catalog: what the user asks for (a manifest today), validated before anything is sent."""
