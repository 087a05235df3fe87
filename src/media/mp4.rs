//! Native ISO-BMFF (MP4/MOV/M4A) header parser. STUB: owned by the probe work.
