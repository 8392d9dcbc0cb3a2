"""inocray: inoculation-prompting sweeps."""
