"""HTTP file upload (XEP-0363): a component at ``upload.<domain>`` hands out slots, the
broker's HTTP listener takes the PUT of each slot and serves the files, which are kept
under the data dir until they expire.  See ``service.UploadService``."""
