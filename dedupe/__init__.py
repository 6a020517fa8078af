"""crmhub dedupe: normalise, block, compare, score, cluster, survive."""
