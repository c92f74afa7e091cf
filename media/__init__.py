"""Media primitives shared by the AudioSocket layer, the engines and the dialog: the clock every
timer runs on, and PCM helpers (resampling, G.711, tones, analysis)."""
