<?php
// The CGI variables Corral sent for this request.
header("Content-Type: text/plain; charset=utf-8");
foreach (["SCRIPT_NAME", "SCRIPT_FILENAME", "PATH_INFO", "REQUEST_URI", "DOCUMENT_ROOT"] as $key) {
    echo $key, " = ", $_SERVER[$key] ?? "", "\n";
}
