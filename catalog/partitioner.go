package catalog

// PartitionForKey returns the partition of n that a record with key goes
// to: Kafka's default partitioner, toPositive(murmur2(key)) % n, so keys
// land on the same partitions as they would in a Kafka topic of n
// partitions. n must be positive.
func PartitionForKey(key []byte, n int) int {
	return int(uint32(murmur2(key))&0x7fffffff) % n
}

// murmur2 is Kafka's variant of MurmurHash2 (org.apache.kafka.common.utils.Utils.murmur2):
// seed 0x9747b28c, little-endian 4-byte blocks.
func murmur2(data []byte) int32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	length := len(data)
	h := uint32(seed) ^ uint32(length)
	n4 := length / 4
	for i := range n4 {
		k := uint32(data[i*4]) | uint32(data[i*4+1])<<8 | uint32(data[i*4+2])<<16 | uint32(data[i*4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[n4*4:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}
