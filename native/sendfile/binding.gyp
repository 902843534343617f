{
  "targets": [
    {
      "target_name": "sendfile",
      "sources": ["sendfile.c", "hash-write.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        ["OS!='linux'", {"type": "none", "sources!": ["sendfile.c", "hash-write.c"]}]
      ]
    }
  ]
}
