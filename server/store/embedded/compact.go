package embedded

// DefaultCompactThreshold is the default of Options.CompactThreshold.
const DefaultCompactThreshold = 64 << 20
