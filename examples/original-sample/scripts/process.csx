// Reads the fetch output (JSON on stdin) and writes a processed summary.
using System;
var input = Console.In.ReadToEnd();
Console.WriteLine("{\"processed\": true, \"from\": " + input + "}");
