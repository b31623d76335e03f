package logstore

// WithFormatV1 returns cfg set to create new segments in format version 1,
// as the previous version of this package did, so that tests can make
// version 1 logs and check that this version reads and upgrades them.
func WithFormatV1(cfg Config) Config {
	cfg.format = 1
	return cfg
}

// FrameSize is the bytes a record of n payload bytes takes in a store of
// cfg's format.
func FrameSize(cfg Config, n int) int64 { return cfgLayout(cfg).frameSize(n) }

func cfgLayout(cfg Config) *layout {
	if cfg.format != 0 {
		return layoutFor(cfg.format)
	}
	return layoutNew
}
